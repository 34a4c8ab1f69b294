"""Heat service configs (the templates GBP node drivers send) as nfp resources."""
