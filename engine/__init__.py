"""The ggzy engine: deployment, runtime, timers and audit for BPMN trading procedures.

This package never imports Flask; ``web`` builds on it, never the reverse.
"""
