"""The scale-out path: a local Postgres cluster, the tracking server (Postgres + GCS), Vertex AI job specs.

Everything here runs on one machine with real parts (a real Postgres server, a real GCS API
emulator); only the submission to Google Cloud itself needs a project and credentials.
"""
