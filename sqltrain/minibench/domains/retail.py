"""Train domain: a retail chain (stores, customers, products, orders, order items)."""

from __future__ import annotations

import random

from sqltrain.minibench import words as W
from sqltrain.minibench.model import Col, Domain, Entity, Link, TableSpec, Template

PRODUCTS = {
    "Electronics": ("Headphones", "Speaker", "Keyboard", "Mouse", "Charger", "Webcam", "Monitor"),
    "Home": ("Lamp", "Blender", "Kettle", "Toaster", "Pillow", "Rug", "Clock"),
    "Clothing": ("Jacket", "Sweater", "Scarf", "Sneakers", "Hat", "Jeans", "Gloves"),
    "Grocery": ("Coffee", "Tea", "Honey", "Olive Oil", "Granola", "Chocolate", "Pasta"),
    "Toys": ("Puzzle", "Robot", "Kite", "Board Game", "Teddy Bear", "Yo-Yo"),
    "Sports": ("Yoga Mat", "Dumbbell", "Tennis Racket", "Water Bottle", "Helmet", "Backpack"),
}
PRICE = {"Electronics": (15, 400), "Home": (10, 150), "Clothing": (12, 180), "Grocery": (3, 30), "Toys": (5, 90),
         "Sports": (8, 220)}
BRANDS = ("Wireless", "Organic", "Classic", "Compact", "Deluxe", "Eco", "Smart", "Vintage", "Ultra", "Premium")
DISTRICTS = ("Central", "North", "South", "East", "West", "Harbor", "Old Town", "Riverside")
LEVELS = (("Bronze", 6), ("Silver", 3), ("Gold", 2), ("Platinum", 1))
PAYMENTS = (("Credit Card", 6), ("Debit Card", 3), ("Cash", 2), ("PayPal", 2))
STATUS = (("Delivered", 10), ("Shipped", 3), ("Pending", 2), ("Returned", 1))

TABLES = (
    TableSpec("stores", (Col("store_id", "INTEGER"), Col("store_name"), Col("city"), Col("opened_year", "INTEGER"),
                         Col("floor_area", "INTEGER")), "store_id"),
    TableSpec("customers", (Col("customer_id", "INTEGER"), Col("first_name"), Col("last_name"), Col("city"),
                            Col("membership_level"), Col("signup_date", "DATE")), "customer_id"),
    TableSpec("products", (Col("product_id", "INTEGER"), Col("product_name"), Col("category"), Col("unit_price", "REAL"),
                           Col("stock_quantity", "INTEGER", "stock quantity")), "product_id"),
    TableSpec("orders", (Col("order_id", "INTEGER"), Col("customer_id", "INTEGER"), Col("store_id", "INTEGER"),
                         Col("order_date", "DATE"), Col("payment_method"), Col("status")),
              "order_id", (("customer_id", "customers", "customer_id"), ("store_id", "stores", "store_id"))),
    TableSpec("order_items", (Col("order_item_id", "INTEGER"), Col("order_id", "INTEGER"), Col("product_id", "INTEGER"),
                              Col("quantity", "INTEGER")),
              "order_item_id", (("order_id", "orders", "order_id"), ("product_id", "products", "product_id"))),
)


def _product(rng: random.Random) -> tuple[str, str]:
    category = W.pick(rng, sorted(PRODUCTS))
    return f"{W.pick(rng, BRANDS)} {W.pick(rng, PRODUCTS[category])}", category


def rows(rng: random.Random) -> dict[str, list[tuple]]:
    cities = [c for c, _ in W.CITIES[:8]]
    names = W.unique(rng, 20, lambda r: f"{W.pick(r, cities)} {W.pick(r, DISTRICTS)}")
    stores = [(i + 1, n, n.split()[0], rng.randint(1995, 2022), rng.randrange(8, 60) * 100) for i, n in enumerate(names)]
    customers = [(i + 1, f, l, W.pick(rng, cities), W.weighted(rng, LEVELS), W.day(rng, "2018-01-01", "2023-12-31"))
                 for i, (f, l) in enumerate(W.unique(rng, 80, W.person))]
    products = []
    for i, (name, cat) in enumerate(W.unique(rng, 60, _product)):
        lo, hi = PRICE[cat]
        products.append((i + 1, name, cat, W.money(rng, lo, hi), rng.randint(0, 500)))
    buyers = W.some(rng, [c[0] for c in customers], 10)
    orders = [(i + 1, W.pick(rng, buyers), rng.randint(1, len(stores)), W.day(rng, "2024-01-01", "2024-12-31"),
               W.weighted(rng, PAYMENTS), W.weighted(rng, STATUS)) for i in range(150)]
    sold = W.some(rng, [p[0] for p in products], 8)
    items = [(i + 1, i % 150 + 1 if i < 150 else rng.randint(1, 150), W.pick(rng, sold), rng.randint(1, 5))
             for i in range(200)]
    return {"stores": stores, "customers": customers, "products": products, "orders": orders, "order_items": items}


_BOUGHT = ("customers AS T1 JOIN orders AS T2 ON T1.customer_id = T2.customer_id "
           "JOIN order_items AS T3 ON T2.order_id = T3.order_id JOIN products AS T4 ON T3.product_id = T4.product_id")
_ITEMS = "order_items AS T1 JOIN products AS T2 ON T1.product_id = T2.product_id"
TEMPLATES = (
    Template("custom", ("Which customers bought {v}? Give their first and last names.",
                        "List the first and last names of customers who ordered the product {v}."),
             f"SELECT DISTINCT T1.first_name, T1.last_name FROM {_BOUGHT} WHERE T4.product_name = {{v}}",
             (("v", f"SELECT DISTINCT T4.product_name FROM {_BOUGHT}"),), 3),
    Template("custom", ("Which products were ordered by customers from {v}? List the product names.",),
             f"SELECT DISTINCT T4.product_name FROM {_BOUGHT} WHERE T1.city = {{v}}",
             (("v", "SELECT DISTINCT city FROM customers"),), 2),
    Template("custom", ("What is the total quantity ordered of {v}?", "How many units of {v} have been ordered in total?"),
             f"SELECT sum(T1.quantity) FROM {_ITEMS} WHERE T2.product_name = {{v}}",
             (("v", f"SELECT DISTINCT T2.product_name FROM {_ITEMS}"),), 3),
    Template("custom", ("Which product has been ordered in the largest total quantity?",
                        "Find the name of the product with the highest total ordered quantity."),
             f"SELECT T2.product_name FROM {_ITEMS} GROUP BY T1.product_id ORDER BY sum(T1.quantity) DESC LIMIT 1", instances=1),
    Template("custom", ("Which products have never been ordered?", "List the names of products that appear in no order."),
             "SELECT product_name FROM products WHERE product_id NOT IN (SELECT product_id FROM order_items)", instances=1),
    Template("custom", ("List the names of {v} products that cost more than {x}.",
                        "Which products in the category {v} have a unit price above {x}?"),
             "SELECT product_name FROM products WHERE category = {v} AND unit_price > {x}",
             (("v", "SELECT DISTINCT category FROM products"), ("x", (10, 20, 50, 100))), 3),
    Template("custom", ("How many orders have status {v} and were paid by {x}?",),
             "SELECT count(*) FROM orders WHERE status = {v} AND payment_method = {x}",
             (("v", "SELECT DISTINCT status FROM orders"), ("x", "SELECT DISTINCT payment_method FROM orders")), 2),
    Template("custom", ("What is the total value of order {v}?", "Compute the total price of all items in order {v}."),
             f"SELECT sum(T1.quantity * T2.unit_price) FROM {_ITEMS} WHERE T1.order_id = {{v}}",
             (("v", "SELECT DISTINCT order_id FROM order_items"),), 2),
    Template("custom", ("How many orders were placed in {v[1]}?",),
             "SELECT count(*) FROM orders WHERE order_date LIKE {v[0]:prefix}",
             (("v", (("2024-03", "March 2024"), ("2024-07", "July 2024"), ("2024-11", "November 2024"))),), 2),
    Template("custom", ("Which stores in {v} opened after {x}? Give their names.",),
             "SELECT store_name FROM stores WHERE city = {v} AND opened_year > {x}",
             (("v", "SELECT DISTINCT city FROM stores"), ("x", (2000, 2005, 2010))), 2),
)

DOMAIN = Domain(
    "retail_store", TABLES, rows,
    entities=(
        Entity("stores", "store", ("store_name",), "name", categories=("city",), measures=("opened_year", "floor_area")),
        Entity("customers", "customer", ("first_name", "last_name"), "first and last name",
               categories=("city", "membership_level"), pronoun="their"),
        Entity("products", "product", ("product_name",), "name", categories=("category",),
               measures=("unit_price", "stock_quantity"), totals=("stock_quantity",), words=True),
        Entity("orders", "order", categories=("payment_method", "status")),
        Entity("order_items", "order item", measures=("quantity",), totals=("quantity",)),
    ),
    links=(
        Link("orders", "customer_id", "customers", "placed by {}"),
        Link("orders", "store_id", "stores", "placed at {}"),
        Link("order_items", "product_id", "products", "for {}"),
    ),
    templates=TEMPLATES,
)
