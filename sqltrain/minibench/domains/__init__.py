"""Domains of the embedded mini benchmark (built by sqltrain.minibench.build).

Dev databases are disjoint from train ones, as in Spider: a model is scored on schemas it
never saw in training.
"""

from sqltrain.minibench.domains import festival, flights, hospital, library, real_estate, retail, sports, university

TRAIN_DOMAINS = (library.DOMAIN, hospital.DOMAIN, retail.DOMAIN, university.DOMAIN, flights.DOMAIN)
DEV_DOMAINS = (festival.DOMAIN, real_estate.DOMAIN, sports.DOMAIN)
