from __future__ import annotations

from clarion.store.batching import ROWS_PER_STATEMENT, chunks, ordered_chunks, rounds


def test_chunks_cut_in_order_at_the_size() -> None:
    assert list(chunks([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]
    assert list(chunks([])) == []
    assert [len(chunk) for chunk in chunks(list(range(ROWS_PER_STATEMENT + 1)))] == [ROWS_PER_STATEMENT, 1]


def test_ordered_chunks_sort_by_key_in_code_point_order_before_cutting() -> None:
    rows = [{"id": "b"}, {"id": "a"}, {"id": "B"}, {"id": "é"}, {"id": "a-1"}]
    assert [[row["id"] for row in chunk] for chunk in ordered_chunks(rows, lambda row: (row["id"],), 2)] == [
        ["B", "a"],
        ["a-1", "b"],
        ["é"],
    ]


def test_rounds_put_the_kth_occurrence_of_each_key_in_round_k() -> None:
    assert rounds(["a", "b", "a", "c", "a", "b"]) == [[0, 1, 3], [2, 5], [4]]
    assert rounds(["a", "b"]) == [[0, 1]]
    assert rounds([]) == []
