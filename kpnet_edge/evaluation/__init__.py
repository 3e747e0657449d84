"""Model-independent scoring of detect-JSON output: detection AP and recall, landmark NME, tables."""
