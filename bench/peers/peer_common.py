"""What the peer scripts share (standard library only, so importing it costs nothing): the length syntax of the apb
CLI. The scripts run as `python3 bench/peers/X.py`, which puts this folder on sys.path."""


def lengths(text):
    """"32k" = 32768, "1m" = 1048576, plain integers as they are; comma-separated, as `apb bench --lengths` takes them."""
    out = []
    for s in text.split(','):
        s = s.strip().lower()
        mult = 1024 if s.endswith('k') else 1 << 20 if s.endswith('m') else 1
        out.append(int(s.rstrip('km')) * mult)
    return out
