"""Per-item arrays and neighbour lists grown in place for online adds, never written where an older copy reads."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tokrec.models.growth import csr_with_headroom, grown, grown_rows, with_headroom


def _lists(n: int, cols: int, seed: int) -> sp.csr_matrix:
    r = np.random.default_rng(seed)
    k = 3
    return sp.csr_matrix(
        (
            r.random(n * k, dtype=np.float32),
            r.integers(0, cols, n * k).astype(np.int32),
            np.arange(0, n * k + 1, k),
        ),
        shape=(n, cols),
    )


def test_grown_rows_appends_in_place_and_never_writes_the_old_matrix() -> None:
    base = csr_with_headroom(_lists(400, 30, 0))  # 1,200 entries, 75 spare
    before = base.toarray()
    a, b = _lists(2, 30, 1), _lists(1, 30, 2)
    g = grown_rows(base, a)
    assert g.shape == (402, 30) and np.shares_memory(g.data, base.data)
    np.testing.assert_array_equal(g.toarray(), np.vstack([before, a.toarray()]))
    g2 = grown_rows(g, b)  # grows on from the longest view: in place again
    assert np.shares_memory(g2.data, base.data)
    np.testing.assert_array_equal(g2.toarray(), np.vstack([before, a.toarray(), b.toarray()]))
    # another copy growing from the older matrix would write where g reads: it gets its own buffer
    other = grown_rows(base, b)
    assert not np.shares_memory(other.data, base.data)
    np.testing.assert_array_equal(other.toarray(), np.vstack([before, b.toarray()]))
    np.testing.assert_array_equal(g.toarray(), np.vstack([before, a.toarray()]))
    np.testing.assert_array_equal(base.toarray(), before)


def test_grown_rows_of_a_matrix_without_headroom_copies_once_and_checks_columns() -> None:
    plain = _lists(10, 8, 3)
    g = grown_rows(plain, _lists(1, 8, 4))
    assert not np.shares_memory(g.data, plain.data) and g.shape == (11, 8)
    np.testing.assert_array_equal(g[:10].toarray(), plain.toarray())
    with pytest.raises(ValueError, match="columns"):
        grown_rows(plain, _lists(1, 9, 5))


def test_grown_writes_rows_into_spare_capacity_once() -> None:
    base = with_headroom(np.arange(32, dtype=np.float32).reshape(16, 2))
    g = grown(base, 1, np.array([16]), np.array([[-1.0, -2.0]], dtype=np.float32))
    assert np.shares_memory(g, base) and g[-1].tolist() == [-1.0, -2.0] and len(base) == 16
    again = grown(base, 1, np.array([16]), np.array([[5.0, 6.0]], dtype=np.float32))  # g owns that row
    assert not np.shares_memory(again, base) and g[-1].tolist() == [-1.0, -2.0]
    replaced = grown(g, 0, np.array([0]), np.array([[9.0, 9.0]], dtype=np.float32))  # a replaced row copies
    assert not np.shares_memory(replaced, base) and base[0].tolist() == [0.0, 1.0]
