"""The request's path: the run call's stages (`run_call.py` lists them in order) and the pass-through."""
