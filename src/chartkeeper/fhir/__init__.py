"""The patient record: FHIR R4 resources, validated, versioned and indexed for search."""
