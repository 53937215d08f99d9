"""Generative priors shared by attacks: trained once on the aux split and cached."""
