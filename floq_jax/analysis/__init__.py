"""After training: results loading, one bootstrap, tables and plots (``report``), critic diagnostics, Monte-Carlo
returns and the known-answer learning checks (``groundtruth``)."""
