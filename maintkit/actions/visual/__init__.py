"""``visual.check``: visual regression of a shop's pages around an update (Playwright + Chromium).

The same step runs twice in one stage: ``phase: before`` early (before the update) takes the
baseline, ``phase: after`` (after it) captures the same pages again and compares::

    - id: visual-before
      action: visual.check
      with: {phase: before, mask: [".clock"]}
    - id: update
      action: cms.update
    - id: visual-after
      action: visual.check
      with: {phase: after, mask: [".clock"]}

Every page is captured at every size (default: desktop 1366x900 and mobile 390x844),
full-page, after its browser steps (``goto``, ``click``, ``fill``, ``wait_for``: the cart
with an item is the cart page after a click on "add to cart"); pages share one browser
session per size, in order. Dynamic regions are masked by CSS selector. A screenshot whose
ratio of differing pixels (a pixel differs when a colour channel moved by more than
``tolerance``) is over its page's ``threshold`` fails the step with CheckFailed naming the
page, the size and the ratio, so the stage rolls back. The before, after and diff images go
into the run folder, ``visual/<site>/<env>/{before,after,diff}/<page>-<size>.png``, and the
step's data (``visual``) lists them for the report.

Modules: ``params`` (parameters), ``pages`` (default pages per platform), ``shots`` (the
browser), ``diff`` (the pixel diff, Pillow), ``check`` (the action).
"""

from maintkit.actions.visual.check import VisualCheck
from maintkit.actions.visual.params import Page, PageStep, Size, VisualCheckParams

__all__ = ["Page", "PageStep", "Size", "VisualCheck", "VisualCheckParams"]
