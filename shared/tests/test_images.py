from PIL import Image
from vlrepro.shared.images import expand_to_square


def test_expand_to_square_centres_on_the_background():
    img = Image.new("RGB", (4, 2), (10, 20, 30))
    sq = expand_to_square(img, (255, 0, 0))
    assert sq.size == (4, 4)
    # rows 0 and 3 are padding, rows 1-2 the image ((4 - 2) // 2 = 1 row above)
    assert [sq.getpixel((0, y)) for y in range(4)] == [(255, 0, 0), (10, 20, 30), (10, 20, 30), (255, 0, 0)]
    tall = expand_to_square(Image.new("RGB", (1, 3), (7, 7, 7)), (200, 200, 200))
    assert tall.size == (3, 3) and [tall.getpixel((x, 1)) for x in range(3)] == [(200,) * 3, (7,) * 3, (200,) * 3]


def test_square_image_is_returned_unchanged():
    img = Image.new("RGB", (5, 5))
    assert expand_to_square(img, (255, 255, 255)) is img
