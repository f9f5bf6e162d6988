"""The analysis pipeline: a sentence and a run in, every layer's graphs and metrics out (``analysis``); several runs
side by side (``compare``); learning Shi et al.'s fusion gate on a labelled CSV (``gate``)."""
