"""Coding workbench: ICD-10-CM/PCS and HCPCS coding, edits, MS-DRG grouping and physician queries."""
