"""An example jobfleet app; ``jobfleet worker jobfleet_example.jobs:app`` runs it."""
