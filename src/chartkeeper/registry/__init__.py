"""Cancer registry: casefinding, NAACCR abstracts, edits, follow-up, survival and incidence."""
