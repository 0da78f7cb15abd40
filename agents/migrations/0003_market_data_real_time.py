"""The simulated market runs in real time (agents.kinds.market_time): `seconds_per_step`,
a fixed 60 s of market time per step whatever the wall time, is gone. Every stored
market_data config held it (the demo and the API stored the defaults), always as that
default, so it is dropped, not turned into an acceleration (`speed`): those agents now run
in real time, as the issue asks of the demo."""

from django.db import migrations


def drop_seconds_per_step(apps, schema_editor):
    Agent = apps.get_model("agents", "Agent")
    for agent in Agent.objects.filter(kind="market_data").only("pk", "config"):
        config = agent.config
        if isinstance(config, dict) and "seconds_per_step" in config:
            agent.config = {k: v for k, v in config.items() if k != "seconds_per_step"}
            agent.save(update_fields=["config"])


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0002_person_input_rules"),
    ]

    operations = [
        migrations.RunPython(drop_seconds_per_step, migrations.RunPython.noop),
    ]
