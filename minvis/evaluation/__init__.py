"""Video instance segmentation evaluation: the YouTube-VIS metric and the submission format."""
