"""``sevila web``: a browser demo of the forward chain (Gradio, optional extra ``sevila-tools[web]``).

:mod:`~sevila_tools.web.callbacks` and :mod:`~sevila_tools.web.uploads` need no Gradio;
:mod:`~sevila_tools.web.app` builds and serves the page.
"""

from sevila_tools.web.callbacks import Comparison, SelectorRun, Stage, WebDemo, parse_options, web_selectors
from sevila_tools.web.uploads import VIDEO_EXTENSIONS, check_upload, pick_video

__all__ = [
    "VIDEO_EXTENSIONS",
    "Comparison",
    "SelectorRun",
    "Stage",
    "WebDemo",
    "check_upload",
    "parse_options",
    "pick_video",
    "web_selectors",
]
