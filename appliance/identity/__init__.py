"""Who is calling: the verified client certificate, turned into an Identity with roles."""
