"""Draw SmoothViz's example pictures (made by SmoothViz, CC0): ``python assets/images/make_examples.py``.

Simple shapes on plain or graded backgrounds, 224×224 pixels (the size most ViT, DeiT and DINOv2
checkpoints are prepared at), drawn with PIL only, deterministic (no randomness).
"""

from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).parent
SIZE = 224


def _sky(top=(120, 170, 235), bottom=(200, 225, 250)) -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE))
    draw = ImageDraw.Draw(image)
    for y in range(SIZE):
        t = y / (SIZE - 1)
        draw.line([(0, y), (SIZE, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom)))
    return image


def ball() -> Image.Image:
    """A red ball on grass under a sky."""
    image = _sky()
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 150, SIZE, SIZE], fill=(70, 150, 60))
    draw.ellipse([62, 70, 162, 170], fill=(210, 40, 40), outline=(120, 20, 20), width=3)
    draw.ellipse([88, 92, 108, 108], fill=(240, 150, 150))
    return image


def house() -> Image.Image:
    """A house with a roof, a door and a sun."""
    image = _sky()
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 175, SIZE, SIZE], fill=(80, 160, 70))
    draw.ellipse([165, 18, 205, 58], fill=(250, 210, 60))
    draw.rectangle([50, 105, 160, 185], fill=(230, 200, 150), outline=(90, 70, 50), width=2)
    draw.polygon([(40, 108), (105, 55), (170, 108)], fill=(150, 50, 40))
    draw.rectangle([92, 140, 118, 185], fill=(110, 70, 40))
    draw.rectangle([62, 122, 84, 144], fill=(170, 210, 240), outline=(90, 70, 50))
    draw.rectangle([128, 122, 150, 144], fill=(170, 210, 240), outline=(90, 70, 50))
    return image


def shapes() -> Image.Image:
    """Three shapes of three colours on a grey table."""
    image = Image.new("RGB", (SIZE, SIZE), (205, 205, 200))
    draw = ImageDraw.Draw(image)
    draw.rectangle([20, 30, 95, 105], fill=(40, 90, 200))
    draw.ellipse([125, 35, 200, 110], fill=(240, 170, 30))
    draw.polygon([(60, 200), (112, 120), (164, 200)], fill=(40, 160, 90))
    return image


def stripes() -> Image.Image:
    """Black and white vertical stripes crossed by a red horizontal bar."""
    image = Image.new("RGB", (SIZE, SIZE), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    for x in range(0, SIZE, 32):
        draw.rectangle([x, 0, x + 15, SIZE], fill=(20, 20, 20))
    draw.rectangle([0, 96, SIZE, 127], fill=(200, 40, 40))
    return image


EXAMPLES = {"ball": ball, "house": house, "shapes": shapes, "stripes": stripes}

if __name__ == "__main__":
    for name, draw in EXAMPLES.items():
        draw().save(HERE / f"{name}.png", optimize=True)
        print(f"wrote {name}.png")
