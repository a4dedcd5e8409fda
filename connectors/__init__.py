"""PSP adapters behind one Protocol (``connectors.base``), found through ``connectors.registry``."""
