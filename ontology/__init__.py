"""The medshadow ontology: closed vocabulary, OWL file, reasoner check and RDF export."""
