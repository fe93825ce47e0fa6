#!/bin/sh
# Starts the compose fleet's Alertmanager. alertmanager.yml notifies the webhook at
# ALERTMANAGER_WEBHOOK_URL, which Alertmanager cannot read from its environment: the URL
# goes into a file only this container reads, and is never printed (it may carry a
# token). Empty: no-receiver.yml, the alerts are shown and sent nowhere.
set -eu
here=/etc/alertmanager
if [ -n "${ALERTMANAGER_WEBHOOK_URL:-}" ]; then
    umask 077
    mkdir -p /tmp/alertmanager
    printf '%s' "$ALERTMANAGER_WEBHOOK_URL" >/tmp/alertmanager/webhook-url
    config=$here/alertmanager.yml
else
    echo "ALERTMANAGER_WEBHOOK_URL is empty: the alerts show on http://127.0.0.1:9093 and notify nobody" >&2
    config=$here/no-receiver.yml
fi
unset ALERTMANAGER_WEBHOOK_URL
exec /bin/alertmanager --config.file="$config" --storage.path=/alertmanager "$@"
