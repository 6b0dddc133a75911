"""Story corpora (one module per dataset) and the shared formatting, tokenizing and collating."""
