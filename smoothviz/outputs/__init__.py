"""Everything drawn or written from an analysis: figures (``figures``, ``corpus_figures``), the registry of views the
page and the report show (``views``), each chart's numbers as a table (``tables``), the self-contained HTML report
(``report``) and the layer-by-layer animation (``animate``)."""
