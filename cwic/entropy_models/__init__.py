"""The learned context models and the arithmetic coding of the map and the kept bits."""
