"""The model side: loading a model (``models``), sharing it (``handles``), running one sentence through it and
capturing every layer (``capture``, with SmoothViz's own attention function in ``attention``), reading its weights
(``weights``), and the configurable teaching model (``lab``)."""
