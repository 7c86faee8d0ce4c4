"""mgdsl/cost.py: the MAC counts people read (compile, list, render headers) have three significant digits."""
import pytest

from mgdsl.cost import si


@pytest.mark.parametrize("n,text", [(3_803_000_000, "3.80 G"), (555_420_000, "555 M"), (12_345_678, "12.3 M"),
                                    (12_345, "12.3 k"), (1_000, "1.00 k"), (999, "999"), (0, "0")])
def test_a_mac_count_is_shown_with_three_significant_digits(n, text):
    assert si(n) == text
