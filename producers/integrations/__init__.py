"""Adapters for voice-agent frameworks and platforms.

Each framework module (`producers.integrations.livekit`, `producers.integrations.pipecat`)
imports its framework, installed by the extra of the same name (`pip install
'midcall-sms[livekit]'`); importing `producers` itself never needs them. `follow` is the
framework-free part they share: the news about a text that comes after the tool has answered.
"""
