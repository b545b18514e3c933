from sqlalchemy import text


async def test_schema_is_there(engine):
    async with engine.connect() as conn:
        n = (await conn.execute(text("select count(*) from services"))).scalar_one()
    assert n == 0
