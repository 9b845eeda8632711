"""Text preparation: normalisation and segmentation into engine-sized chunks."""
