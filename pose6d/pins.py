"""The pose from pins (model points dragged onto the photo): the public name of
``pose6d.fitting.pins``, ``from pose6d.pins import solve_pins`` (issue 21)."""
from pose6d.fitting.pins import model_points, solve_pins, solve_points

__all__ = ["solve_pins", "solve_points", "model_points"]
