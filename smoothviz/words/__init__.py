"""The words computed from the numbers: claims as checked data (``claims``), the trend sentences (``trends``), the
Theory page's measured facts (``theory``) and the Lesson's eight steps (``lesson``)."""
