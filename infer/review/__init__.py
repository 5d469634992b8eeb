"""The review desk (`dermaseg review`): correct plans in the browser, re-plan, export."""
