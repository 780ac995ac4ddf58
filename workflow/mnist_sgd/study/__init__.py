"""The study's plan, torch-free: what a run is (runs), what it costs (cost), the data-set catalogue
(datasets), the runs a configuration plans (plan), the config read as meant (config), where every file
lives (layout), which figures a plan draws (targets), and the records a run leaves (records, files).
Planning imports nothing else; every other sub-package may import this one.
"""
