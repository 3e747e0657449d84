"""Dataset loaders for the standard face formats (WIDER FACE, RetinaFace label.txt, MTFL, folders)."""
