"""Where and how a job runs, never what it computes: the job preamble (job), the warm worker (worker,
client), devices and their locks (devices), the machine (host), this user's private directory
(private_dir) and the code digests (digests). Code digests leave this sub-package out: editing it
retrains nothing. Imports nothing else of the package.
"""
