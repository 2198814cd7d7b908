"""`vrp-sam app`: segment people's own images with an annotated reference, in the browser.

`session` does the work (annotations -> prompt masks, targets -> masks, the download bundle)
and needs no browser; `toy` provides the embedded toy model and example; `page` lays out the
Gradio page (`pip install -e ".[app]"`) over them.
"""
