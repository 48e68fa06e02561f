#!/bin/sh
# Dovecote's RabbitMQ users and permissions, generated from the topic registry by
# `python -m dovecote.tools.acl` (make docs): do not edit. Run once on a node of the
# cluster (users and permissions are cluster-wide), with each password in the
# environment:
#   DOVECOTE_PW_<SERVICE>=... sh permissions.sh
# Topic permissions are matched against the AMQP routing key, where MQTT's / is a .
set -eu
VHOST=dovecote
rabbitmqctl add_vhost "$VHOST" 2>/dev/null || true

user() {  # name, password, write regex
  rabbitmqctl add_user "$1" "$2" 2>/dev/null || rabbitmqctl change_password "$1" "$2"
  # configure: its own MQTT session queues; write/read: amq.topic only
  rabbitmqctl set_permissions -p "$VHOST" "$1" "^mqtt-subscription-.*" "^(amq\.topic|mqtt-subscription-.*)$" "^(amq\.topic|mqtt-subscription-.*)$"
  rabbitmqctl set_topic_permissions -p "$VHOST" "$1" amq.topic "$3" '^(dovecote\..*|\$share\.[^.]+\.dovecote\..*)$'
}

user observer "$DOVECOTE_PW_OBSERVER" '^$'
user operator "$DOVECOTE_PW_OPERATOR" '^(dovecote\.commands\.deadletters\.list|dovecote\.commands\.deadletters\.replay)$'
user builder "$DOVECOTE_PW_BUILDER" '^(dovecote\.deadletter\.builder|dovecote\.events\.build\.failed|dovecote\.events\.build\.progress|dovecote\.events\.build\.rejected|dovecote\.events\.build\.started|dovecote\.events\.build\.stopped|dovecote\.events\.build\.succeeded|dovecote\.services\.builder\.[^.]+|dovecote\.services\.probe\.[^.]+\.[^.]+|dovecote\.services\.query|dovecote\.state\.build|dovecote\.state\.builds)$'
user deadletters "$DOVECOTE_PW_DEADLETTERS" '^(dovecote\.commands\.[^.]+\.redeliver|dovecote\.deadletter\.deadletters|dovecote\.replies\.deadletters\.[^.]+|dovecote\.services\.deadletters\.[^.]+|dovecote\.services\.probe\.[^.]+\.[^.]+|dovecote\.services\.query)$'
user gateway "$DOVECOTE_PW_GATEWAY" '^(dovecote\.commands\.builder\.start|dovecote\.commands\.builder\.stop|dovecote\.commands\.notifier\.inbox|dovecote\.commands\.notifier\.read|dovecote\.deadletter\.gateway|dovecote\.events\.image\.created|dovecote\.events\.people\.followed|dovecote\.events\.people\.unfollowed|dovecote\.services\.gateway\.[^.]+|dovecote\.services\.probe\.[^.]+\.[^.]+|dovecote\.services\.query)$'
user notifier "$DOVECOTE_PW_NOTIFIER" '^(dovecote\.deadletter\.notifier|dovecote\.replies\.notifier\.[^.]+|dovecote\.services\.notifier\.[^.]+|dovecote\.services\.probe\.[^.]+\.[^.]+|dovecote\.services\.query|dovecote\.users\.[^.]+\.inbox|dovecote\.users\.[^.]+\.notifications)$'
user points "$DOVECOTE_PW_POINTS" '^(dovecote\.deadletter\.points|dovecote\.events\.points\.awarded|dovecote\.services\.points\.[^.]+|dovecote\.services\.probe\.[^.]+\.[^.]+|dovecote\.services\.query|dovecote\.state\.leaderboard)$'
user resizer "$DOVECOTE_PW_RESIZER" '^(dovecote\.deadletter\.resizer|dovecote\.events\.image\.resized|dovecote\.services\.probe\.[^.]+\.[^.]+|dovecote\.services\.query|dovecote\.services\.resizer\.[^.]+)$'
user tweeter "$DOVECOTE_PW_TWEETER" '^(dovecote\.deadletter\.tweeter|dovecote\.events\.tweet\.created|dovecote\.services\.probe\.[^.]+\.[^.]+|dovecote\.services\.query|dovecote\.services\.tweeter\.[^.]+)$'
