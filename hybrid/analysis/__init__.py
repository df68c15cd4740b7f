"""Post-processing that is not DNS: statistics, growth-law fits and plots of results files."""
