"""The review grid: keyboard triage and caption review of many images at once
(the image admin's `review/` page; see docs/labeling.md "Reviewing images")."""
