"""`tooling forecast`: a phase's throughput, scaling and communication overhead, predicted from the smaller
phases' measured runs and the measured all-reduce bandwidth before it is deployed."""
