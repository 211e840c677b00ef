"""Early exit (CALM, Schuster et al. 2022): stop computing once a lens reading has settled."""
