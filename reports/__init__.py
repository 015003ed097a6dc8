"""Excel writing shared by posting previews and reconciliation workbooks; knows nothing of either."""
