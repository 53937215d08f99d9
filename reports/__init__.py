"""HTML reports: templates, tables and plots."""
