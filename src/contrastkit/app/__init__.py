"""The application: the ``contrastkit`` command, built on the library.

* :mod:`~contrastkit.app.config`: the options of a run and their TOML file;
* :mod:`~contrastkit.app.build`: the parts of a run (data, network, loss, schedule);
* :mod:`~contrastkit.app.run`: one run from data to report, as a function;
* :mod:`~contrastkit.app.evaluate`: verification, retrieval and anomaly scores of a run;
* :mod:`~contrastkit.app.figures`: the figures of a run's report;
* :mod:`~contrastkit.app.result`: what a run returns, typed, and its JSON;
* :mod:`~contrastkit.app.rundir`: the run folder: made, checked, written and read safely;
* :mod:`~contrastkit.app.extras`: the packages of the ``app`` extra, checked;
* :mod:`~contrastkit.app.compare`: the comparison of ``contrastkit compare``;
* :mod:`~contrastkit.app.report`: the HTML pages;
* :mod:`~contrastkit.app.cli`: the command line.

Nothing in the library imports this package. Importing it imports nothing heavy: the
command line answers ``--help`` and ``--version`` without loading torch.
"""
