"""experiments.benchmark's sections, one module each: configs and the shared set-up (``base``), the update
cases (``updates``), seeds and the training loop (``seeds``), evaluation (``evaluation``), memory (``memory``), and the
targets and the table (``report``)."""
