#!/bin/sh
# The example application: shows that its secrets arrived (lengths only; never print secrets
# in a real application) and then waits for SIGTERM like a service.
echo "DB_PASSWORD has ${#DB_PASSWORD} characters, API_TOKEN has ${#API_TOKEN} characters, LOG_LEVEL=$LOG_LEVEL"
trap 'echo "SIGTERM received, stopping"; exit 0' TERM
while :; do sleep 1; done
