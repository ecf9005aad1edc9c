"""Request and response models mirroring the components of Knock's OpenAPI document, named as there."""
