"""Clinical research on cohorts: RECIST 1.1 response, dose-response statistics and survival.

``recist`` (response per visit and best overall response), ``table`` (the cohort and lesion tables,
their schema and checks), ``descriptive``, ``logistic`` (with Firth's fit under separation), ``roc``
(AUC with DeLong CI, Youden cut-off with bootstrap CI), ``survival`` (Kaplan-Meier, log-rank, Cox),
``analysis`` (everything for one cohort as a JSON-ready dict), ``report`` (HTML/PDF with figures),
``cli`` (``seedbrachy cohort``). Needs statsmodels and matplotlib (pip dependencies of SeedBrachyLib;
installed on demand in Slicer); nothing here is imported by the Slicer module at start-up.
"""
