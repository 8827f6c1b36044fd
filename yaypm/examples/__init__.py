"""Small example apps written in the style of the YAYPM documentation."""
