"""Classical codecs, quality metrics, BD-rate, RD plots and the evaluation and speed commands."""
