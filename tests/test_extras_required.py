"""helpers.require: a test that needs a module that is not installed skips, or fails under
MARIONETTE_REQUIRE_EXTRAS=1 (how .ci/run runs the suite), unless `.[dev]` does not install that
module on this Python; at the top of a module the whole module skips, or cannot be collected."""

from __future__ import annotations

import helpers
import pytest

NEEDS = 'from helpers import require\n\n{at_top}\ndef test_it():\n    {in_test}\n'
REQUIRE = 'require("marionette_no_such_module", "needs marionette_no_such_module")'


def test_a_missing_module_skips_or_fails_under_require_extras(pytester: pytest.Pytester,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_inside=NEEDS.format(at_top="", in_test=REQUIRE),
                        test_top=NEEDS.format(at_top=REQUIRE + "\n", in_test="pass"))
    monkeypatch.delenv(helpers.REQUIRE_EXTRAS, raising=False)
    pytester.runpytest().assert_outcomes(skipped=2)

    monkeypatch.setenv(helpers.REQUIRE_EXTRAS, "1")
    failed = pytester.runpytest("test_inside.py")
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(["*needs marionette_no_such_module (No module named 'marionette_no_such_module')"
                                 " (MARIONETTE_REQUIRE_EXTRAS=1: CI installs it)"])
    pytester.runpytest("test_top.py").assert_outcomes(errors=1)  # the run stops: the module cannot be collected

    monkeypatch.setattr(helpers, "NOT_INSTALLED", {"marionette_no_such_module"})  # as mediapipe on Python 3.13
    pytester.runpytest("test_inside.py").assert_outcomes(skipped=1)
